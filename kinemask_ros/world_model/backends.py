"""Pick the execution backend of the world model: ``load_pipeline(path, backend=..., device=...)``.

* ``"torch"``: :meth:`KineMaskPipeline.from_pretrained` on the resolved torch device.
* ``"onnxruntime"``: the same :class:`KineMaskPipeline`, its denoisers replaced by
  :class:`~kinemask_ros.world_model.onnx_backend.OnnxTrackDenoiser` /
  :class:`~kinemask_ros.world_model.onnx_backend.OnnxVideoDenoiser` (ONNX Runtime sessions on
  CUDA/TensorRT when the onnxruntime build has them, else on the CPU).

The ONNX graphs are looked up in ``onnx_dir`` (default ``PATH/onnx``, or ``PATH`` itself when it
holds ``track_encode.onnx``, i.e. a directory written by ``kinemask-export-onnx``). Their
metadata must match ``PATH/world_model_config.json`` and, when the torch weights sit next to them,
the weights hash (a stale export is refused rather than silently used).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kinemask_ros.world_model.config import WorldModelConfig
from kinemask_ros.world_model.gpu import MISSING_GPU_POLICIES, _check_device_string, resolve_torch_device
from kinemask_ros.world_model.onnx_backend import (
    CPU_PROVIDER,
    GPU_PROVIDERS,
    GRAPH_FILES,
    OnnxTrackDenoiser,
    OnnxVideoDenoiser,
    _provider_names,
    checkpoint_weights_sha256,
    resolve_providers,
)
from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT, KineMaskPipeline, _check_dir

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class BackendConfig:
    """How to run the world model.

    Attributes:
        backend: "torch" or "onnxruntime".
        device: "auto", "cpu", "cuda" or "cuda:N" (for onnxruntime: which providers to prefer).
        providers: explicit ONNX Runtime providers in order (onnxruntime only; overrides ``device``).
        strict: an explicit provider missing from the onnxruntime build is a ``ValueError``.
        on_missing_gpu: "error" (``ValueError``) or "fallback" (one warning, then CPU) when a GPU
            device is requested and none is usable.
        use_tensorrt: onnxruntime: try TensorRT before CUDA when available.
        onnx_dir: where the ONNX graphs are (default: ``PATH/onnx`` or ``PATH``).
        load_video: also load the video denoiser when the checkpoint has one.
        verify_weights: onnxruntime: compare the graphs' weights hash with ``PATH/track`` and
            ``PATH/video`` when those torch checkpoints exist.
        intra_op_threads: ONNX Runtime intra-op threads (0 = onnxruntime's default).
    """

    backend: str = "torch"
    device: str = "auto"
    providers: tuple[str, ...] | None = None
    strict: bool = False
    on_missing_gpu: str = "error"
    use_tensorrt: bool = False
    onnx_dir: str | None = None
    load_video: bool = True
    verify_weights: bool = True
    intra_op_threads: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"BackendConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        _check_device_string(self.device)
        if self.on_missing_gpu not in MISSING_GPU_POLICIES:
            raise ValueError(f"BackendConfig.on_missing_gpu must be one of {MISSING_GPU_POLICIES}, got {self.on_missing_gpu!r}")
        if self.providers is not None:
            if isinstance(self.providers, str) or not self.providers or not all(isinstance(p, str) for p in self.providers):
                raise ValueError(f"BackendConfig.providers must be a non-empty tuple of provider names, got {self.providers!r}")
            if self.backend != "onnxruntime":
                raise ValueError(f"BackendConfig.providers is an onnxruntime option; backend is {self.backend!r}")
        if not isinstance(self.intra_op_threads, int) or self.intra_op_threads < 0:
            raise ValueError(f"BackendConfig.intra_op_threads must be an int >= 0, got {self.intra_op_threads!r}")


def find_onnx_dir(root: Path, onnx_dir: str | Path | None = None) -> Path:
    if onnx_dir is not None:
        d = Path(onnx_dir)
    elif (root / GRAPH_FILES["track_encode"]).is_file():
        d = root
    else:
        d = root / "onnx"
    if not (d / GRAPH_FILES["track_encode"]).is_file():
        raise FileNotFoundError(f"no ONNX export in {d} ({GRAPH_FILES['track_encode']} missing); run "
                                f"`kinemask-export-onnx --checkpoint {root}` first, or use backend='torch'")
    return d


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return so


def load_onnx_pipeline(root: Path, cfg: BackendConfig) -> KineMaskPipeline:
    world = WorldModelConfig.load(root / "world_model_config.json")
    d = find_onnx_dir(root, cfg.onnx_dir)
    providers = resolve_providers(cfg.device, cfg.providers, cfg.strict, cfg.on_missing_gpu, cfg.use_tensorrt)
    on_gpu = _provider_names(providers)[0] in GPU_PROVIDERS
    out_device = torch.device("cuda", next((p[1]["device_id"] for p in providers if isinstance(p, tuple)), 0)) \
        if on_gpu and torch.cuda.is_available() else torch.device("cpu")
    so = _session_options(cfg.intra_op_threads)
    track = OnnxTrackDenoiser.from_dir(d, world, providers, so, out_device)
    video = None
    if cfg.load_video and (d / GRAPH_FILES["video_denoise"]).is_file():
        video = OnnxVideoDenoiser.from_dir(d, world, providers, so, out_device)
    if cfg.verify_weights:
        for name, model in (("track", track), ("video", video)):
            if model is not None and (root / name / "config.json").is_file():
                if checkpoint_weights_sha256(root / name) != model.weights_sha256:
                    raise ValueError(f"the ONNX export in {d} is stale: its {name} weights differ from {root / name} "
                                     f"(retrained since the export?); re-run `kinemask-export-onnx --checkpoint {root}`")
    if on_gpu and track.providers[0] == CPU_PROVIDER:
        # onnxruntime-gpu without a usable CUDA runtime silently drops to the CPU provider.
        wanted = _provider_names(providers)[0]
        explicit_gpu = cfg.providers is None and cfg.device != "auto" and cfg.on_missing_gpu == "error"
        if explicit_gpu or (cfg.providers is not None and cfg.strict):
            raise ValueError(f"ONNX Runtime could not start {wanted} for {d} (see the onnxruntime log above); "
                             "use device='cpu', on_missing_gpu='fallback' or strict=False")
        logger.warning("ONNX Runtime could not start %s; running on %s", wanted, CPU_PROVIDER)
        for m in (track, video):
            if m is not None:
                m.to("cpu")
    return KineMaskPipeline(world, track, video)


def load_pipeline(path: str | Path | None = None, backend: str = "torch", device: str = "auto",
                  providers: tuple[str, ...] | list[str] | None = None, *, config: BackendConfig | None = None,
                  **options: Any) -> KineMaskPipeline:
    """Load the world-model pipeline on the chosen backend.

    Args:
        path: checkpoint directory (default: the embedded checkpoint), or a directory written by
            ``kinemask-export-onnx`` for ``backend="onnxruntime"``.
        backend: "torch" or "onnxruntime".
        device: "auto", "cpu", "cuda" or "cuda:N".
        providers: ONNX Runtime providers, e.g. ``("CUDAExecutionProvider", "CPUExecutionProvider")``.
        config: a full :class:`BackendConfig` (then ``backend``/``device``/``providers``/``options``
            must be left at their defaults).
        **options: other :class:`BackendConfig` fields (``strict``, ``on_missing_gpu``, ...).

    Returns:
        a :class:`KineMaskPipeline`; with onnxruntime its ``track_model``/``video_model`` are the
        ONNX wrappers and its outputs live on the CPU unless the session runs on CUDA.
    """
    if config is None:
        config = BackendConfig(backend=backend, device=device,
                               providers=tuple(providers) if providers is not None else None, **options)
    elif (backend, device, providers, options) != ("torch", "auto", None, {}):
        raise ValueError("pass either config=BackendConfig(...) or the backend/device/providers/options arguments, not both")
    root = Path(path) if path is not None else EMBEDDED_CHECKPOINT
    _check_dir(root, "directory")
    _check_dir(root / "world_model_config.json", "config")
    if config.backend == "torch":
        dev = resolve_torch_device(config.device, config.on_missing_gpu)
        return KineMaskPipeline.from_pretrained(root, device=dev, load_video=config.load_video)
    return load_onnx_pipeline(root, config)
