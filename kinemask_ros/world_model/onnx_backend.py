"""ONNX export of the world-model denoisers and ONNX Runtime wrappers with the torch call interface.

Graphs (one file each, dynamic batch axis, opset 17 by default):

================================  ==========================================================
``track_encode.onnx``             ``TrackDenoiser.encode``: image, slot masks [, velocity0]
                                  [, driver] -> tokens ``(B, K, dim)``, present ``(B, K)``
``track_encode_text.onnx``        the same with a ``text`` input (only when ``text_dim > 0``)
``track_denoise.onnx``            ``TrackDenoiser.forward``: sample, timestep, tokens, present
``video_denoise.onnx``            ``VideoDenoiser.forward``: sample, timestep, cond
``video_denoise_text.onnx``       the same with a ``text`` input (only when ``text_dim > 0``)
================================  ==========================================================

Every file carries metadata (``metadata_props``): the :class:`WorldModelConfig` JSON, the module's
own diffusers config, and a SHA-256 of the torch weights it was exported from, so that a file
exported from another model config (or a stale export of retrained weights) is refused with a
``ValueError`` naming what differs. :class:`OnnxTrackDenoiser` / :class:`OnnxVideoDenoiser` expose
what :class:`~kinemask_ros.world_model.pipeline.KineMaskPipeline` uses of the torch modules
(``encode``, ``__call__``, ``config``, ``eval``, ``to``, ``device``, ``parameters``), so the
pipeline runs unchanged on ONNX Runtime; build it with
:func:`kinemask_ros.world_model.backends.load_pipeline`.

CLI: ``kinemask-export-onnx --checkpoint runs/wm --out runs/wm/onnx``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as TF
from diffusers.configuration_utils import FrozenDict
from torch import nn

from kinemask_ros.world_model import networks
from kinemask_ros.world_model.config import WorldModelConfig
from kinemask_ros.world_model.networks import TrackDenoiser, VideoDenoiser

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
FORMAT_VERSION = "1"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
GRAPH_FILES = {
    "track_encode": "track_encode.onnx",
    "track_encode_text": "track_encode_text.onnx",
    "track_denoise": "track_denoise.onnx",
    "video_denoise": "video_denoise.onnx",
    "video_denoise_text": "video_denoise_text.onnx",
}
META_FORMAT = "kinemask.format"
META_GRAPH = "kinemask.graph"
META_WORLD_CONFIG = "kinemask.world_model_config"
META_MODULE_CLASS = "kinemask.module_class"
META_MODULE_CONFIG = "kinemask.module_config"
META_WEIGHTS = "kinemask.weights_sha256"
META_TORCH = "kinemask.torch_version"

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER)


# ----------------------------------------------------------------------------- hashing / metadata
def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of a state dict (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checkpoint_weights_sha256(module_dir: str | Path) -> str:
    """:func:`weights_sha256` of a diffusers checkpoint directory's safetensors file."""
    from safetensors.torch import load_file

    return weights_sha256(load_file(str(Path(module_dir) / WEIGHTS_NAME)))


def _module_config(module: nn.Module) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(module.config).items() if not k.startswith("_")}


def config_differences(exported: dict, expected: dict) -> list[str]:
    """``["field: onnx=.. vs checkpoint=..", ...]`` for fields that differ (missing counts as differing)."""
    out = []
    for k in sorted(set(exported) | set(expected)):
        a, b = exported.get(k, "<missing>"), expected.get(k, "<missing>")
        if isinstance(a, tuple):
            a = list(a)
        if isinstance(b, tuple):
            b = list(b)
        if a != b:
            out.append(f"{k}: onnx={a!r} vs checkpoint={b!r}")
    return out


# ----------------------------------------------------------------------------- export
class _FunctionalForExport:
    """``torch.nn.functional`` with an ``adaptive_avg_pool2d`` that takes ``output_size`` as ints.

    ``TrackDenoiser.encode`` pools to ``fmap.shape[-2:]``; under tracing those are tensors and the
    ONNX exporter refuses a non-constant output size. The size is fixed by the model config, so
    making it constant is exact.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(TF, name)

    @staticmethod
    def adaptive_avg_pool2d(x: torch.Tensor, output_size: Any) -> torch.Tensor:
        return TF.adaptive_avg_pool2d(x, tuple(int(s) for s in output_size))


@contextlib.contextmanager
def _export_mode() -> Iterator[None]:
    old = networks.F
    networks.F = _FunctionalForExport()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about the constant sizes above
            yield
    finally:
        networks.F = old


class _EncodeGraph(nn.Module):
    def __init__(self, model: TrackDenoiser, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(zip(self.names, inputs))
        c = self.model.encode(kw["image"], kw["slot_masks"], kw.get("velocity0"), kw.get("driver"), kw.get("text"))
        return c["tokens"], c["present"]


class _TrackDenoiseGraph(nn.Module):
    def __init__(self, model: TrackDenoiser):
        super().__init__()
        self.model = model

    def forward(self, sample, timestep, tokens, present):
        return self.model(sample, timestep, {"tokens": tokens, "present": present})


class _VideoDenoiseGraph(nn.Module):
    def __init__(self, model: VideoDenoiser, with_text: bool):
        super().__init__()
        self.model, self.with_text = model, with_text

    def forward(self, sample, timestep, cond, text=None):
        return self.model(sample, timestep, cond, text if self.with_text else None)


def _export_graph(graph: nn.Module, inputs: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
                  path: Path, opset: int, metadata: dict[str, str]) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    graph = graph.eval()
    # Exported with grad mode on: under no_grad nn.MultiheadAttention takes its fused "fast path"
    # (aten::_native_multi_head_attention), which has no ONNX symbolic.
    with _export_mode(), torch.enable_grad():
        torch.onnx.export(graph, inputs, str(path), dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, do_constant_folding=True,
                          dynamic_axes={n: {0: "batch"} for n in input_names + output_names})
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    return path


def _metadata(graph: str, module: nn.Module, world_config: WorldModelConfig) -> dict[str, str]:
    return {
        META_FORMAT: FORMAT_VERSION,
        META_GRAPH: graph,
        META_WORLD_CONFIG: json.dumps(world_config.to_dict(), sort_keys=True),
        META_MODULE_CLASS: type(module).__name__,
        META_MODULE_CONFIG: json.dumps(_module_config(module), sort_keys=True),
        META_WEIGHTS: weights_sha256(module.state_dict()),
        META_TORCH: torch.__version__,
    }


def _track_encode_inputs(model: TrackDenoiser, batch: int, with_text: bool, gen: torch.Generator) -> tuple[list[str], tuple]:
    c = model.config
    H, W, K, T = c.height, c.width, c.max_objects, c.num_frames
    names, xs = ["image", "slot_masks"], [torch.rand(batch, 3, H, W, generator=gen) * 2 - 1,
                                         (torch.rand(batch, K, H, W, generator=gen) > 0.7).float()]
    if c.conditioning in ("velocity", "both"):
        names.append("velocity0")
        xs.append(torch.rand(batch, 3, H, W, generator=gen) * 2 - 1)
    if c.conditioning in ("driver", "both"):
        names.append("driver")
        xs.append((torch.rand(batch, T, H, W, generator=gen) > 0.8).float())
    if with_text:
        names.append("text")
        xs.append(torch.randn(batch, c.text_dim, generator=gen))
    return names, tuple(xs)


def _video_inputs(model: VideoDenoiser, world_config: WorldModelConfig, batch: int, with_text: bool,
                  gen: torch.Generator) -> tuple[list[str], tuple]:
    c = model.config
    Tv, H, W = world_config.video_frames, world_config.height, world_config.width
    names = ["sample", "timestep", "cond"]
    xs = [torch.randn(batch, 3 + c.max_objects, Tv, H, W, generator=gen), torch.rand(batch, generator=gen) * 1000,
          torch.rand(batch, c.cond_channels, Tv, H, W, generator=gen) * 2 - 1]
    if with_text:
        names.append("text")
        xs.append(torch.randn(batch, c.text_dim, generator=gen))
    return names, tuple(xs)


def _max_diff(path: Path, graph: nn.Module, names: list[str], inputs: tuple) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=[CPU_PROVIDER])
    with torch.no_grad():
        ref = graph(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = sess.run(None, {n: x.numpy() for n, x in zip(names, inputs)})
    return max(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got))


def export_track_denoiser(model: TrackDenoiser, world_config: WorldModelConfig, out_dir: str | Path,
                          opset: int = DEFAULT_OPSET, verify_batch: int = 3) -> dict[str, float]:
    """Write ``track_encode[_text].onnx`` and ``track_denoise.onnx``; returns ``{file: max |torch - ORT|}``.

    The example batch is 2 (so the exporter cannot specialise on batch 1); the check runs on
    ``verify_batch`` other random inputs through ONNX Runtime (CPU).
    """
    out_dir = Path(out_dir)
    model = model.eval().cpu()
    c = model.config
    gen = torch.Generator().manual_seed(0)
    diffs: dict[str, float] = {}
    variants = [False, True] if c.text_dim > 0 else [False]
    for with_text in variants:
        key = "track_encode_text" if with_text else "track_encode"
        names, xs = _track_encode_inputs(model, 2, with_text, gen)
        g = _EncodeGraph(model, names)
        p = _export_graph(g, xs, names, ["tokens", "present"], out_dir / GRAPH_FILES[key], opset, _metadata(key, model, world_config))
        vnames, vxs = _track_encode_inputs(model, verify_batch, with_text, gen)
        diffs[p.name] = _max_diff(p, g, vnames, vxs)
    names, xs = _track_encode_inputs(model, 2, False, gen)
    with torch.no_grad():
        tokens, present = _EncodeGraph(model, names)(*xs)
    sample = torch.randn(2, c.max_objects, c.num_frames - 1, 2, generator=gen)
    present = present.clone()
    present[0, -1] = 0.0  # exercise the padding mask
    ins = (sample, torch.rand(2, generator=gen) * 1000, tokens, present)
    g = _TrackDenoiseGraph(model)
    p = _export_graph(g, ins, ["sample", "timestep", "tokens", "present"], ["prediction"], out_dir / GRAPH_FILES["track_denoise"],
                      opset, _metadata("track_denoise", model, world_config))
    vins = tuple(torch.cat([x, x[:1]]) for x in ins)
    diffs[p.name] = _max_diff(p, g, ["sample", "timestep", "tokens", "present"], vins)
    return diffs


def export_video_denoiser(model: VideoDenoiser, world_config: WorldModelConfig, out_dir: str | Path,
                          opset: int = DEFAULT_OPSET, verify_batch: int = 3) -> dict[str, float]:
    """Write ``video_denoise[_text].onnx``; returns ``{file: max |torch - ORT|}``."""
    out_dir = Path(out_dir)
    model = model.eval().cpu()
    gen = torch.Generator().manual_seed(1)
    diffs: dict[str, float] = {}
    for with_text in ([False, True] if model.config.text_dim > 0 else [False]):
        key = "video_denoise_text" if with_text else "video_denoise"
        names, xs = _video_inputs(model, world_config, 2, with_text, gen)
        g = _VideoDenoiseGraph(model, with_text)
        p = _export_graph(g, xs, names, ["prediction"], out_dir / GRAPH_FILES[key], opset, _metadata(key, model, world_config))
        vnames, vxs = _video_inputs(model, world_config, verify_batch, with_text, gen)
        diffs[p.name] = _max_diff(p, g, vnames, vxs)
    return diffs


@dataclass
class ExportReport:
    """What :func:`export_checkpoint` wrote: files, ``max |torch - ORT|`` per graph, seconds."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, opset: int = DEFAULT_OPSET,
                      video: bool = True) -> ExportReport:
    """Export a checkpoint directory (``world_model_config.json``, ``track/`` [, ``video/``]) to ONNX.

    Writes the graphs and a copy of ``world_model_config.json`` into ``out`` (default
    ``CHECKPOINT/onnx``), so that directory alone is a deployable checkpoint for the
    ``onnxruntime`` backend.
    """
    t0 = time.perf_counter()
    root = Path(checkpoint)
    if not root.is_dir():
        raise FileNotFoundError(f"checkpoint directory {root} not found (expected world_model_config.json and track/)")
    cfg_path = root / "world_model_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {root} is not a world-model checkpoint directory")
    if not (root / "track" / "config.json").is_file():
        raise FileNotFoundError(f"{root / 'track'} not found: the checkpoint has no track model to export")
    if not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an int >= 17, got {opset!r}")
    world = WorldModelConfig.load(cfg_path)
    out_dir = Path(out) if out is not None else root / "onnx"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(out_dir=out_dir)
    track = TrackDenoiser.from_pretrained(root / "track")
    _check_module_matches_world(track, world, root / "track")
    report.max_abs_diff.update(export_track_denoiser(track, world, out_dir, opset))
    if video and (root / "video" / "config.json").is_file():
        report.max_abs_diff.update(export_video_denoiser(VideoDenoiser.from_pretrained(root / "video"), world, out_dir, opset))
    for name in GRAPH_FILES.values():  # no graph of an older export may stay next to the new ones
        if name not in report.max_abs_diff:
            (out_dir / name).unlink(missing_ok=True)
    if cfg_path.resolve() != (out_dir / cfg_path.name).resolve():
        shutil.copyfile(cfg_path, out_dir / cfg_path.name)
    report.files = sorted(out_dir / f for f in report.max_abs_diff) + [out_dir / cfg_path.name]
    report.seconds = time.perf_counter() - t0
    return report


def _check_module_matches_world(track: Any, world: WorldModelConfig, where: Path) -> None:
    tc = track.config
    mine = {"height": tc.height, "width": tc.width, "num_frames": tc.num_frames, "max_objects": tc.max_objects,
            "conditioning": tc.conditioning, "text_dim": tc.text_dim}
    diffs = config_differences(mine, {k: getattr(world, k) for k in mine})
    if diffs:
        raise ValueError(f"the track model in {where} does not match world_model_config.json: " + "; ".join(diffs))


# ----------------------------------------------------------------------------- providers
def _index(device: str) -> int:
    return (torch.device(device).index or 0) if device.startswith("cuda") else 0


def resolve_providers(device: str = "auto", providers: Sequence[str] | None = None, strict: bool = False,
                      on_missing_gpu: str = "error", use_tensorrt: bool = False) -> list:
    """Choose ONNX Runtime execution providers (always ending with the CPU provider).

    Args:
        device: "auto" (GPU providers when available, else CPU), "cpu", or "cuda[:N]" (requires the
            CUDA/TensorRT provider: ``ValueError`` or CPU fallback, see ``on_missing_gpu``).
        providers: explicit provider names, in order of preference; overrides ``device``.
        strict: with explicit ``providers``, a provider that this onnxruntime build lacks is a
            ``ValueError`` instead of a warning.
        on_missing_gpu: "error" or "fallback" (log one warning and use the CPU).
        use_tensorrt: in "auto"/"cuda" mode, try TensorRT before CUDA when available.

    Falling back to the CPU is reported with exactly one log line (INFO for "auto", WARNING when
    the GPU or a provider was asked for explicitly).
    """
    import onnxruntime as ort

    from kinemask_ros.world_model.gpu import MISSING_GPU_POLICIES, _check_device_string

    _check_device_string(device)
    if on_missing_gpu not in MISSING_GPU_POLICIES:
        raise ValueError(f"on_missing_gpu must be one of {MISSING_GPU_POLICIES}, got {on_missing_gpu!r}")
    available = list(ort.get_available_providers())
    opts = {"device_id": _index(device)}

    def with_options(names: list[str]) -> list:
        return [(n, dict(opts)) if n in GPU_PROVIDERS else n for n in names]

    if providers is not None:
        if isinstance(providers, str) or not providers or not all(isinstance(p, str) for p in providers):
            raise ValueError(f"providers must be a non-empty list of provider names such as {[CUDA_PROVIDER, CPU_PROVIDER]}, got {providers!r}")
        missing = [p for p in providers if p not in available]
        if missing and strict:
            raise ValueError(f"ONNX Runtime provider(s) {missing} requested but not available in this onnxruntime build "
                             f"(available: {available}); install onnxruntime-gpu for CUDA/TensorRT, or pass strict=False to fall back")
        chosen = [p for p in providers if p in available]
        if CPU_PROVIDER not in chosen:
            chosen.append(CPU_PROVIDER)
        if missing:
            logger.warning("ONNX Runtime provider(s) %s not available (available: %s); using %s", missing, available, chosen)
        return with_options(chosen)
    if device == "cpu":
        return [CPU_PROVIDER]
    wanted = ([TENSORRT_PROVIDER] if use_tensorrt else []) + [CUDA_PROVIDER]
    gpu = [p for p in wanted if p in available]
    if gpu:
        return with_options(gpu + [CPU_PROVIDER])
    if device == "auto":
        logger.info("ONNX Runtime: no CUDA/TensorRT execution provider (available: %s); running on %s", available, CPU_PROVIDER)
        return [CPU_PROVIDER]
    if on_missing_gpu == "error":
        raise ValueError(f"device {device!r} was requested but this onnxruntime build has no {CUDA_PROVIDER} "
                         f"(available: {available}); install onnxruntime-gpu, use device='cpu' or 'auto', "
                         "or on_missing_gpu='fallback'")
    logger.warning("device %r was requested but ONNX Runtime has no %s (available: %s); falling back to %s",
                   device, CUDA_PROVIDER, available, CPU_PROVIDER)
    return [CPU_PROVIDER]


def _provider_names(providers: Sequence) -> list[str]:
    return [p[0] if isinstance(p, tuple) else p for p in providers]


# ----------------------------------------------------------------------------- runtime wrappers
class OnnxGraph:
    """One ONNX Runtime session plus the kinemask metadata of its file."""

    def __init__(self, path: str | Path, providers: Sequence | None = None, session_options: Any = None,
                 expected_graph: str | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {self.path} not found; export the checkpoint with "
                                    "`kinemask-export-onnx --checkpoint DIR --out DIR`")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=session_options,
                                                providers=list(providers or [CPU_PROVIDER]))
        except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{self.path} is not a loadable ONNX model ({reason}); re-export it with kinemask-export-onnx") from e
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if META_GRAPH not in self.metadata or META_WORLD_CONFIG not in self.metadata:
            raise ValueError(f"{self.path} is an ONNX model but not one written by kinemask-export-onnx "
                             f"(no {META_GRAPH!r}/{META_WORLD_CONFIG!r} metadata)")
        if expected_graph is not None and self.metadata[META_GRAPH] != expected_graph:
            raise ValueError(f"{self.path} holds the {self.metadata[META_GRAPH]!r} graph, expected {expected_graph!r}")
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def world_config(self) -> dict:
        return json.loads(self.metadata[META_WORLD_CONFIG])

    @property
    def module_config(self) -> dict:
        return json.loads(self.metadata[META_MODULE_CONFIG])

    @property
    def weights_sha256(self) -> str:
        return self.metadata.get(META_WEIGHTS, "")

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def check_world_config(self, expected: WorldModelConfig) -> None:
        diffs = config_differences(self.world_config, expected.to_dict())
        if diffs:
            raise ValueError(f"{self.path} was exported from a different world-model config ({'; '.join(diffs)}); "
                             "re-export it with `kinemask-export-onnx --checkpoint DIR` from the checkpoint you load")

    def run(self, feeds: dict[str, torch.Tensor | None]) -> list[np.ndarray]:
        arrays = {}
        for name in self.input_names:
            x = feeds.get(name)
            if x is None:
                raise ValueError(f"{self.path.name} needs input {name!r} (inputs: {self.input_names})")
            arrays[name] = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return self.session.run(None, arrays)


class _OnnxModule:
    """What the pipeline needs of an ``nn.Module``: ``config``, ``eval``, ``to``, ``device``, ``parameters``."""

    def __init__(self, config: dict, device: str | torch.device = "cpu"):
        self.config = FrozenDict(config)
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def eval(self) -> "_OnnxModule":
        return self

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "_OnnxModule":
        """Where outputs are returned (the graph runs on the session's providers)."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        if dtype is not None and dtype != torch.float32:
            raise ValueError(f"the ONNX graphs are float32; cannot convert to {dtype}")
        if device is not None:
            self._device = torch.device(device)
        return self

    def parameters(self) -> Iterator[torch.Tensor]:
        """No trainable parameters; yields one empty tensor on :attr:`device` (``next(m.parameters()).device``)."""
        yield torch.empty(0, device=self._device)

    def _out(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self._device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self._device}, config={dict(self.config)})"


class OnnxTrackDenoiser(_OnnxModule):
    """ONNX Runtime stand-in for :class:`TrackDenoiser` (``encode`` -> dict, ``__call__`` -> tensor)."""

    def __init__(self, encode: OnnxGraph, denoise: OnnxGraph, encode_text: OnnxGraph | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__(encode.module_config, device)
        self.encode_graph, self.denoise_graph, self.encode_text_graph = encode, denoise, encode_text
        self.weights_sha256 = encode.weights_sha256
        for g in (denoise, encode_text):
            if g is not None and g.weights_sha256 != self.weights_sha256:
                raise ValueError(f"{g.path} and {encode.path} were exported from different track weights; re-export the directory")

    @classmethod
    def from_dir(cls, onnx_dir: str | Path, world_config: WorldModelConfig | None = None, providers: Sequence | None = None,
                 session_options: Any = None, device: str | torch.device = "cpu") -> "OnnxTrackDenoiser":
        d = Path(onnx_dir)
        enc = OnnxGraph(d / GRAPH_FILES["track_encode"], providers, session_options, "track_encode")
        den = OnnxGraph(d / GRAPH_FILES["track_denoise"], providers, session_options, "track_denoise")
        txt_path = d / GRAPH_FILES["track_encode_text"]
        txt = OnnxGraph(txt_path, providers, session_options, "track_encode_text") if txt_path.is_file() else None
        if world_config is not None:
            for g in (enc, den, txt):
                if g is not None:
                    g.check_world_config(world_config)
        return cls(enc, den, txt, device)

    @property
    def providers(self) -> list[str]:
        return self.denoise_graph.providers

    def encode(self, image: torch.Tensor, slot_masks: torch.Tensor, velocity0: torch.Tensor | None = None,
               driver: torch.Tensor | None = None, text: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Same arguments and result as :meth:`TrackDenoiser.encode`."""
        graph = self.encode_text_graph if (text is not None and self.encode_text_graph is not None) else self.encode_graph
        tokens, present = graph.run({"image": image, "slot_masks": slot_masks, "velocity0": velocity0, "driver": driver, "text": text})
        return {"tokens": self._out(tokens), "present": self._out(present)}

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sample (B, K, T-1, 2)``, ``timestep (B,)``, ``cond`` from :meth:`encode` -> prediction."""
        (pred,) = self.denoise_graph.run({"sample": sample, "timestep": timestep, "tokens": cond["tokens"], "present": cond["present"]})
        return self._out(pred)

    forward = __call__


class OnnxVideoDenoiser(_OnnxModule):
    """ONNX Runtime stand-in for :class:`VideoDenoiser` (``__call__(sample, timestep, cond, text=None)``)."""

    def __init__(self, graph: OnnxGraph, text_graph: OnnxGraph | None = None, device: str | torch.device = "cpu"):
        super().__init__(graph.module_config, device)
        self.graph, self.text_graph = graph, text_graph
        self.weights_sha256 = graph.weights_sha256

    @classmethod
    def from_dir(cls, onnx_dir: str | Path, world_config: WorldModelConfig | None = None, providers: Sequence | None = None,
                 session_options: Any = None, device: str | torch.device = "cpu") -> "OnnxVideoDenoiser":
        d = Path(onnx_dir)
        g = OnnxGraph(d / GRAPH_FILES["video_denoise"], providers, session_options, "video_denoise")
        tp = d / GRAPH_FILES["video_denoise_text"]
        t = OnnxGraph(tp, providers, session_options, "video_denoise_text") if tp.is_file() else None
        if world_config is not None:
            for x in (g, t):
                if x is not None:
                    x.check_world_config(world_config)
        return cls(g, t, device)

    @property
    def providers(self) -> list[str]:
        return self.graph.providers

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor,
                 text: torch.Tensor | None = None) -> torch.Tensor:
        graph = self.text_graph if (text is not None and self.text_graph is not None) else self.graph
        (pred,) = graph.run({"sample": sample, "timestep": timestep, "cond": cond, "text": text})
        return self._out(pred)

    forward = __call__


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kinemask-export-onnx",
                                description="Export a world-model checkpoint's track and video denoisers to ONNX.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (world_model_config.json, track/, video/)")
    p.add_argument("--out", default=None, help="output directory (default: CHECKPOINT/onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--no-video", action="store_true", help="export the track model only")
    a = p.parse_args(argv)
    try:
        r = export_checkpoint(a.checkpoint, a.out, opset=a.opset, video=not a.no_video)
    except (ValueError, FileNotFoundError) as e:
        print(f"kinemask-export-onnx: error: {e}", file=sys.stderr)
        return 2
    for name, d in r.max_abs_diff.items():
        print(f"{r.out_dir / name}: checked with onnx.checker; max |torch - onnxruntime| = {d:.2e}")
    print(f"exported in {r.seconds:.1f} s to {r.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
