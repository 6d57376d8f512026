"""Tests for the SAM 2 backend (kinemask_ros/segmentation/sam2_backend.py).

No real weights exist on this machine: a random-init hiera-tiny is built at image size 256, saved
as a local checkpoint and loaded back through the backend. The tests check the code paths,
shapes and prompt handling, not mask quality.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from kinemask_ros.segmentation import Sam2Config, Sam2Segmenter, Segmentation, Segmenter, build_sam2_model  # noqa: E402
from kinemask_ros.segmentation.sam2_backend import SAM2_MODEL_CONFIGS, check_checkpoint  # noqa: E402

SIZE = 256  # model resolution for the tests (1024 is the trained size)
FAST = dict(image_size=SIZE, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_area=1, max_area_fraction=1.0)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def scene_image() -> np.ndarray:
    img = np.empty((32, 32, 3), np.uint8)
    img[:] = (204, 196, 181)
    img[4:12, 5:13] = (219, 36, 31)
    img[18:26, 16:28] = (36, 77, 235)
    return img


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    model = build_sam2_model("tiny", checkpoint=None, device="cpu", image_size=SIZE)  # random init
    path = tmp_path_factory.mktemp("sam2") / "ckpt.pt"
    sd = model.state_dict()
    torch.save({"model": sd}, path)
    return path, {k: sd[k] for k in list(sd)[:3]}


@pytest.fixture(scope="module")
def segmenter(checkpoint) -> Sam2Segmenter:
    torch.set_num_threads(2)
    return Sam2Segmenter(Sam2Config(checkpoint=str(checkpoint[0]), **FAST))


def test_loads_the_local_checkpoint(segmenter: Sam2Segmenter, checkpoint) -> None:
    assert isinstance(segmenter, Segmenter)
    assert segmenter.model.image_size == SIZE and segmenter.device.type == "cpu"
    sd = segmenter.model.state_dict()
    for k, v in checkpoint[1].items():
        assert torch.equal(sd[k], v), k  # the weights came from the file, not a fresh random init
    s = SIZE
    assert segmenter.predictor._bb_feat_sizes == [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]


def test_automatic_mask_generation(segmenter: Sam2Segmenter) -> None:
    out = segmenter.segment(scene_image())
    assert isinstance(out, Segmentation) and out.shape == (32, 32) and out.instance_ids.dtype == np.uint8
    assert out.object_ids.tolist() == list(range(1, out.num_objects + 1))
    assert np.all((out.scores >= 0) & (out.scores <= 1)) and out.boxes.shape == (out.num_objects, 4)
    # inputs are converted like every other backend: 64x64 RGBA float -> works, other size
    rgba = np.concatenate([np.kron(scene_image(), np.ones((2, 2, 1))) / 255.0, np.ones((64, 64, 1))], axis=2)
    assert segmenter.segment(rgba).shape == (64, 64)


def test_point_and_box_prompts(segmenter: Sam2Segmenter) -> None:
    img = scene_image()
    out = segmenter.segment_prompts(img, points=[(8.5, 8.5), (20.0, 22.0)], boxes=[(16, 18, 28, 26)])
    assert out.shape == (32, 32) and 1 <= out.num_objects <= 3
    assert out.object_ids.max() <= 3 and np.all(out.areas > 0)
    mask, score = segmenter.segment_object(img, points=[(8.5, 8.5), (30.0, 30.0)], point_labels=[1, 0], box=(4, 3, 14, 13))
    assert mask.shape == (32, 32) and mask.dtype == bool and 0.0 <= score <= 1.0
    mask1, _ = segmenter.segment_object(img, points=[(8.5, 8.5)])  # single point: multimask choice
    assert mask1.shape == (32, 32)
    key = segmenter._image_key
    segmenter.segment_object(img, box=(16, 18, 28, 26))
    assert segmenter._image_key == key  # same image: embedding reused


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(points=[(32.0, 4.0)]), "outside the 32x32 image"),
        (dict(points=[(4.0, -1.0)]), "outside"),
        (dict(boxes=[(10, 10, 5, 20)]), "empty"),
        (dict(boxes=[(0, 0, 40, 10)]), "outside"),
        (dict(), "at least one"),
    ],
)
def test_bad_prompts(segmenter: Sam2Segmenter, kwargs: dict, reason: str) -> None:
    with pytest.raises(ValueError) as e:
        segmenter.segment_prompts(scene_image(), **kwargs)
    assert reason in str(e.value)


def test_bad_object_prompts_and_images(segmenter: Sam2Segmenter) -> None:
    img = scene_image()
    with pytest.raises(ValueError, match="point_labels"):
        segmenter.segment_object(img, points=[(4, 4)], point_labels=[2])
    with pytest.raises(ValueError, match="at least one"):
        segmenter.segment_object(img)
    with pytest.raises(ValueError, match="NaN"):
        segmenter.segment(np.full((8, 8, 3), np.nan))
    with pytest.raises(ValueError, match="empty"):
        segmenter.segment(np.zeros((0, 8, 3), np.uint8))


def test_missing_checkpoint_names_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:
        Sam2Segmenter(Sam2Config(image_size=SIZE))
    assert "checkpoint is None" in str(e.value) and "sam2.1_hiera_tiny.pt" in str(e.value) and "Sam2Config.checkpoint" in str(e.value)
    missing = tmp_path / "nope" / "sam2.1_hiera_small.pt"
    with pytest.raises(FileNotFoundError) as e:
        Sam2Segmenter(Sam2Config(checkpoint=missing, model_config="small"))
    assert str(missing) in str(e.value) and "sam2.1_hiera_small.pt" in str(e.value) and "download" in str(e.value)
    with pytest.raises(FileNotFoundError, match="not a file"):
        check_checkpoint(tmp_path)


def test_unreadable_or_mismatched_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        build_sam2_model("tiny", junk, image_size=SIZE)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"foo": torch.zeros(1)}}, wrong)
    with pytest.raises(ValueError, match="does not fit model_config"):
        build_sam2_model("tiny", wrong, image_size=SIZE)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(device="gpu"), "device"),
        (dict(image_size=100), "image_size"),
        (dict(image_size=32), "image_size"),
        (dict(model_config="configs/sam9/huge.yaml"), "model_config"),
        (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
        (dict(max_area_fraction=0.0), "max_area_fraction"),
        (dict(points_per_side=0), "points_per_side"),
        (dict(checkpoint=""), "checkpoint"),
        (dict(multimask_output="yes"), "multimask_output"),
    ],
)
def test_config_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"Sam2Config.{field}"):
        Sam2Config(**kwargs)


def test_config_short_names() -> None:
    assert Sam2Config(model_config="large").model_config == SAM2_MODEL_CONFIGS["large"]
    assert replace(Sam2Config(), device="cuda:1").device == "cuda:1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_cuda_requested_without_cuda(checkpoint) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        Sam2Segmenter(Sam2Config(checkpoint=checkpoint[0], device="cuda", **FAST))


@pytest.mark.gpu
@needs_cuda
def test_cuda_backend(checkpoint) -> None:
    seg = Sam2Segmenter(Sam2Config(checkpoint=checkpoint[0], device="cuda", **FAST))
    assert seg.device.type == "cuda"
    out = seg.segment_prompts(scene_image(), points=[(8.5, 8.5)], boxes=[(16, 18, 28, 26)])
    assert out.shape == (32, 32) and out.num_objects >= 1
    assert seg.segment(scene_image()).shape == (32, 32)
