"""SAM 2 backend: Meta's Segment Anything 2 (PyPI ``sam2``) from a *local* checkpoint.

The ``sam2`` wheel ships the model configs but no weights, and this project never downloads
them: download a checkpoint yourself (e.g. ``sam2.1_hiera_tiny.pt`` from
https://github.com/facebookresearch/sam2#download-checkpoints) and point
``Sam2Config.checkpoint`` at it, with the matching ``model_config``. See ``docs/segmentation.md``.

* :meth:`Sam2Segmenter.segment` — automatic mask generation (``SAM2AutomaticMaskGenerator``:
  a grid of point prompts, quality/stability filtering, NMS), then masks larger than
  ``max_area_fraction`` of the image (the table) are dropped.
* :meth:`Sam2Segmenter.segment_prompts` — one object per point ``(u, v)`` or box prompt.
* :meth:`Sam2Segmenter.segment_object` — one object from several points (positive/negative) and
  an optional box.

``image_size`` below 1024 (e.g. 256 for the 32x32/64x64 simulator images) is supported by
overriding the model config and fixing ``SAM2ImagePredictor._bb_feat_sizes``, which ``sam2``
1.1.0 hard-codes for 1024. Real checkpoints load at any size (no weight depends on it) but were
trained at 1024.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinemask_ros.segmentation.core import (
    DEFAULT_MAX_PIXELS,
    MAX_OBJECT_ID,
    Segmentation,
    check_box,
    check_float,
    check_point,
    check_positive_int,
    prepare_image,
)

#: Short names for the configs that ship in the ``sam2`` wheel (SAM 2.1 checkpoints).
SAM2_MODEL_CONFIGS: dict[str, str] = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
#: Checkpoint file that goes with each config (official release names).
SAM2_CHECKPOINT_NAMES: dict[str, str] = {
    "configs/sam2.1/sam2.1_hiera_t.yaml": "sam2.1_hiera_tiny.pt",
    "configs/sam2.1/sam2.1_hiera_s.yaml": "sam2.1_hiera_small.pt",
    "configs/sam2.1/sam2.1_hiera_b+.yaml": "sam2.1_hiera_base_plus.pt",
    "configs/sam2.1/sam2.1_hiera_l.yaml": "sam2.1_hiera_large.pt",
    "configs/sam2/sam2_hiera_t.yaml": "sam2_hiera_tiny.pt",
    "configs/sam2/sam2_hiera_s.yaml": "sam2_hiera_small.pt",
    "configs/sam2/sam2_hiera_b+.yaml": "sam2_hiera_base_plus.pt",
    "configs/sam2/sam2_hiera_l.yaml": "sam2_hiera_large.pt",
}
_JIT_WARNING = r".*torch\.jit\.script.*"
_DOWNLOAD_HELP = "https://github.com/facebookresearch/sam2#download-checkpoints"
_SAM21_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"  # SAM 2.1 release


def _sam2_package_dir() -> Path | None:
    spec = importlib.util.find_spec("sam2")  # does not import sam2 (which imports torch and hydra)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model_config(name: str) -> str:
    """Short name (``tiny``, ``small``, ``base_plus``, ``large``) or config path inside ``sam2`` -> config path."""
    return SAM2_MODEL_CONFIGS.get(name, name)


@dataclass(frozen=True)
class Sam2Config:
    """Parameters of :class:`Sam2Segmenter`.

    Attributes:
        checkpoint: local path of the weights (``.pt`` with a ``"model"`` state dict, as released).
        model_config: config inside the ``sam2`` package, or a short name (``tiny``, ``small``,
            ``base_plus``, ``large``); must match the checkpoint.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available).
        image_size: model input resolution (multiple of 32); 1024 as trained, 256 is ~15x faster.
        points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, box_nms_thresh:
            automatic mask generator settings (see ``SAM2AutomaticMaskGenerator``).
        min_area: smallest mask kept [pixels of the input image].
        max_area_fraction: masks covering more of the image than this (the table) are dropped.
        mask_threshold: logit threshold for binary masks.
        multimask_output: let a single point prompt choose among 3 candidate masks.
        max_pixels: larger input images are rejected.
    """

    checkpoint: str | os.PathLike | None = None
    model_config: str = SAM2_MODEL_CONFIGS["tiny"]
    device: str = "cpu"
    image_size: int = 1024
    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.9
    box_nms_thresh: float = 0.7
    min_area: int = 4
    max_area_fraction: float = 0.5
    mask_threshold: float = 0.0
    multimask_output: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        o = "Sam2Config"
        if self.checkpoint is not None and (not isinstance(self.checkpoint, (str, os.PathLike)) or not str(self.checkpoint)):
            raise ValueError(f"{o}.checkpoint must be a local file path or None, got {self.checkpoint!r}")
        if not isinstance(self.model_config, str) or not self.model_config:
            raise ValueError(f"{o}.model_config must be a config name, got {self.model_config!r}")
        cfg_name = resolve_model_config(self.model_config)
        object.__setattr__(self, "model_config", cfg_name)
        pkg = _sam2_package_dir()
        if pkg is not None and not (pkg / cfg_name).is_file():
            known = sorted(str(p.relative_to(pkg)) for p in (pkg / "configs").rglob("*.yaml"))
            raise ValueError(f"{o}.model_config {self.model_config!r} is not a config of the installed sam2 package; known: {known} or {sorted(SAM2_MODEL_CONFIGS)}")
        dev = self.device
        if not isinstance(dev, str) or not (dev in ("cpu", "cuda", "auto") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ValueError(f"{o}.device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {dev!r}")
        check_positive_int(o, "image_size", self.image_size, minimum=64)
        if self.image_size % 32 or self.image_size > 4096:
            raise ValueError(f"{o}.image_size must be a multiple of 32 in [64, 4096], got {self.image_size}")
        check_positive_int(o, "points_per_side", self.points_per_side)
        check_positive_int(o, "points_per_batch", self.points_per_batch)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            check_float(o, name, getattr(self, name), 0.0, 1.0)
        check_positive_int(o, "min_area", self.min_area)
        check_float(o, "max_area_fraction", self.max_area_fraction, 0.0, 1.0, lo_open=True)
        check_float(o, "mask_threshold", self.mask_threshold)
        if not isinstance(self.multimask_output, bool):
            raise ValueError(f"{o}.multimask_output must be a bool, got {self.multimask_output!r}")
        check_positive_int(o, "max_pixels", self.max_pixels)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Sam2Config.device={device!r} but CUDA is not available (torch.cuda.is_available() is False); use device='cpu'")
    return device


def _import_sam2():
    try:
        with warnings.catch_warnings():  # sam2 1.1.0 uses torch.jit.script, deprecated in recent torch
            warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
            from sam2.build_sam import build_sam2
            from sam2.sam2_image_predictor import SAM2ImagePredictor
    except ImportError as e:
        raise ImportError(f"the SAM 2 backend needs the 'sam2' package: pip install --no-build-isolation sam2 ({e})") from e
    return build_sam2, SAM2ImagePredictor, SAM2AutomaticMaskGenerator


def check_checkpoint(checkpoint, model_config: str = SAM2_MODEL_CONFIGS["tiny"]) -> Path:
    """The checkpoint path as a ``Path``, or ``FileNotFoundError`` naming the file and the fix."""
    cfg_name = resolve_model_config(model_config)
    want = SAM2_CHECKPOINT_NAMES.get(cfg_name, "the checkpoint matching model_config")
    where = f"{_SAM21_URL}/{want}" if cfg_name.startswith("configs/sam2.1/") and cfg_name in SAM2_CHECKPOINT_NAMES else _DOWNLOAD_HELP
    fix = (f"download {want} (for model_config {cfg_name!r}) from {where} and set "
           f"Sam2Config.checkpoint to its local path (this project never downloads weights)")
    if checkpoint is None:
        raise FileNotFoundError(f"no SAM 2 checkpoint given (Sam2Config.checkpoint is None): {fix}")
    path = Path(os.fspath(checkpoint)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"SAM 2 checkpoint not found: {str(path)!r}: {fix}")
    if not path.is_file():
        raise FileNotFoundError(f"SAM 2 checkpoint {str(path)!r} is not a file: {fix}")
    return path


def build_sam2_model(model_config: str = SAM2_MODEL_CONFIGS["tiny"], checkpoint=None, device: str = "cpu", image_size: int = 1024):
    """Build a SAM 2 model from a config of the ``sam2`` package and load a local checkpoint.

    ``checkpoint=None`` gives a **random-init** model (tests, speed measurements only). A checkpoint
    may hold ``{"model": state_dict}`` (the official format) or a bare state dict; keys must match
    the config exactly (``ValueError`` otherwise).
    """
    import torch

    build_sam2, _, _ = _import_sam2()
    cfg_name = resolve_model_config(model_config)
    device = _resolve_device(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
        model = build_sam2(cfg_name, ckpt_path=None, device="cpu", mode="eval", hydra_overrides_extra=[f"++model.image_size={int(image_size)}"])
    if checkpoint is not None:
        path = check_checkpoint(checkpoint, cfg_name)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"cannot read SAM 2 checkpoint {str(path)!r}: {type(e).__name__}: {e}") from e
        sd = obj.get("model", obj) if isinstance(obj, dict) else None
        if not isinstance(sd, dict):
            raise ValueError(f"SAM 2 checkpoint {str(path)!r} holds no state dict (expected {{'model': state_dict}})")
        result = model.load_state_dict(sd, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"SAM 2 checkpoint {str(path)!r} does not fit model_config {cfg_name!r}: "
                f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:3]}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
            )
    return model.to(device).eval()


class Sam2Segmenter:
    """SAM 2 behind the :class:`~kinemask_ros.segmentation.core.Segmenter` interface.

    Args:
        config: see :class:`Sam2Config`; ``config.checkpoint`` is required unless ``model`` is given.
        model: an already built SAM 2 model (e.g. from :func:`build_sam2_model`); its
            ``image_size`` must equal ``config.image_size``.
    """

    def __init__(self, config: Sam2Config | None = None, model=None) -> None:
        import torch

        self.config = config or Sam2Config()
        cfg = self.config
        _, predictor_cls, amg_cls = _import_sam2()
        if model is None:
            check_checkpoint(cfg.checkpoint, cfg.model_config)
            model = build_sam2_model(cfg.model_config, cfg.checkpoint, cfg.device, cfg.image_size)
        elif int(getattr(model, "image_size", -1)) != cfg.image_size:
            raise ValueError(f"model.image_size={getattr(model, 'image_size', None)} differs from Sam2Config.image_size={cfg.image_size}")
        else:
            model = model.to(_resolve_device(cfg.device)).eval()
        self.model = model
        self.device = torch.device(next(model.parameters()).device)
        with warnings.catch_warnings():  # SAM2Transforms uses torch.jit.script
            warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
            self.predictor = predictor_cls(model, mask_threshold=cfg.mask_threshold)
            self.generator = amg_cls(
                model, points_per_side=cfg.points_per_side, points_per_batch=cfg.points_per_batch,
                pred_iou_thresh=cfg.pred_iou_thresh, stability_score_thresh=cfg.stability_score_thresh,
                box_nms_thresh=cfg.box_nms_thresh, mask_threshold=cfg.mask_threshold, output_mode="binary_mask",
                multimask_output=cfg.multimask_output,
            )
        s = cfg.image_size
        self.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        self.generator.predictor = self.predictor  # one predictor, one feature-size fix
        self._image_key: str | None = None

    def __repr__(self) -> str:
        return f"Sam2Segmenter({self.config!r})"

    # ---------------------------------------------------------------- embedding cache
    def set_image(self, image) -> np.ndarray:
        """Embed ``image`` (skipped when it is the image embedded last); returns the prepared uint8 image."""
        img = prepare_image(image, self.config.max_pixels)
        key = hashlib.sha1(img.tobytes() + str(img.shape).encode()).hexdigest()
        if key != self._image_key or not self.predictor._is_image_set:
            self.predictor.set_image(img)
            self._image_key = key
        return img

    # ---------------------------------------------------------------- automatic
    def segment(self, image) -> Segmentation:
        """Every object SAM 2 finds (automatic mask generation), ids ``1..K`` by descending score."""
        cfg = self.config
        img = prepare_image(image, cfg.max_pixels)
        self._image_key = None  # the generator re-embeds the image itself
        records = self.generator.generate(img)
        h, w = img.shape[:2]
        keep = [r for r in records if cfg.min_area <= int(r["area"]) <= cfg.max_area_fraction * h * w]
        keep.sort(key=lambda r: -(float(r["predicted_iou"]) * float(r["stability_score"])))
        keep = keep[:MAX_OBJECT_ID]
        if not keep:
            return Segmentation.empty(h, w)
        masks = np.stack([np.asarray(r["segmentation"], bool) for r in keep])
        scores = np.clip([float(r["predicted_iou"]) for r in keep], 0.0, 1.0)
        return Segmentation.from_masks(masks, scores=scores, image=img, min_area=cfg.min_area)

    # ---------------------------------------------------------------- prompts
    def _predict(self, points=None, labels=None, box=None, multimask: bool = False) -> tuple[np.ndarray, float]:
        masks, scores, _ = self.predictor.predict(point_coords=points, point_labels=labels, box=box, multimask_output=multimask)
        i = int(np.argmax(scores))
        return masks[i] > 0.5, float(np.clip(scores[i], 0.0, 1.0))

    def segment_object(self, image, points=None, point_labels=None, box=None) -> tuple[np.ndarray, float]:
        """One object from prompts combined: points ``(N, 2)`` as ``(u, v)`` with labels (1 = on the
        object, 0 = not; default all 1) and/or a box ``(x0, y0, x1, y1)``.

        Returns the ``(H, W)`` bool mask and SAM's predicted IoU.
        """
        img = prepare_image(image, self.config.max_pixels)
        shape = img.shape[:2]
        if points is None and box is None:
            raise ValueError("give at least one point or a box")
        pts = lab = bx = None
        if points is not None:
            pts = np.asarray(points, dtype=float).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
            if pts.shape[0] == 0:
                raise ValueError("points is empty")
            for p in pts:
                check_point(p, shape)
            lab = np.ones(len(pts), np.int64) if point_labels is None else np.asarray(point_labels).reshape(-1)
            if lab.shape != (len(pts),) or not np.isin(lab, (0, 1)).all():
                raise ValueError(f"point_labels must be {len(pts)} values in {{0, 1}}, got {point_labels!r}")
        if box is not None:
            bx = np.asarray(check_box(box, shape), dtype=float)
        self.set_image(img)
        multimask = self.config.multimask_output and bx is None and pts is not None and len(pts) == 1
        return self._predict(pts, lab, bx, multimask)

    def segment_prompts(self, image, points=None, boxes=None) -> Segmentation:
        """One object per prompt: each point ``(u, v)`` of ``points (N, 2)`` and each box of
        ``boxes (M, 4)``. Ids follow the prompt order (points first); a prompt whose mask is
        covered by a higher-scoring one disappears."""
        img = prepare_image(image, self.config.max_pixels)
        shape = img.shape[:2]
        pts = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=float).reshape(-1, 2)
        bxs = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=float).reshape(-1, 4)
        if len(pts) + len(bxs) == 0:
            raise ValueError("give at least one point or box prompt")
        if len(pts) + len(bxs) > MAX_OBJECT_ID:
            raise ValueError(f"at most {MAX_OBJECT_ID} prompts, got {len(pts) + len(bxs)}")
        for p in pts:
            check_point(p, shape)
        for b in bxs:
            check_box(b, shape)
        self.set_image(img)
        masks, scores = [], []
        for p in pts:
            m, s = self._predict(p[None], np.ones(1, np.int64), None, self.config.multimask_output)
            masks.append(m)
            scores.append(s)
        for b in bxs:
            m, s = self._predict(None, None, b, False)
            masks.append(m)
            scores.append(s)
        return Segmentation.from_masks(np.stack(masks), scores=np.array(scores), image=img, min_area=1)
