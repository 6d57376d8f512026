"""Palette-free RGB segmenter (kinemask_ros.segmentation.rgb) on synthetic renders (tests/synthetic_scenes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kinemask_ros.segmentation import ClassicalSegmenter, RgbConfig, RgbSegmenter, make_segmenter, match_instances, select_by_label
from kinemask_ros.segmentation.rgb import split_region
from synthetic_scenes import Obj, oblique_camera, random_objects, render, top_down_camera

OFF_PALETTE = [(0.45, 0.30, 0.65), (0.95, 0.60, 0.20), (0.20, 0.55, 0.55), (0.65, 0.62, 0.15)]  # none is a palette colour


def _scene(cam, objs, **kw):
    return render(cam, objs, **kw)


def test_off_palette_colours_found_and_named_by_rgb_but_not_by_classical() -> None:
    cam = top_down_camera(64)
    objs = [Obj("box", -0.08, -0.06, 0.3, (0.03, 0.025), 0.03, OFF_PALETTE[0]), Obj("cylinder", 0.07, 0.05, 0.0, (0.028, 0.028), 0.03, OFF_PALETTE[1]),
            Obj("box", 0.06, -0.08, 1.0, (0.025, 0.025), 0.03, OFF_PALETTE[2])]
    rgb, ids, _ = _scene(cam, objs, table_rgb=(0.35, 0.45, 0.38), table_texture="grain", rgb_noise=3.0, light_dir=(-0.5, 0.2, 1.0))
    m = match_instances(RgbSegmenter().segment(rgb).instance_ids, ids)
    assert min(m.gt_iou.values()) >= 0.85 and not m.unmatched_pred
    classical = ClassicalSegmenter().segment(rgb)
    assert all(lab is None for lab in classical.labels)  # off-palette: no classical label fits ...
    assert select_by_label(classical, "purple box") == 0 and select_by_label(classical, "orange") == 0  # ... so no target by colour
    seg = RgbSegmenter().segment(rgb)
    assert select_by_label(seg, "purple box") != 0 and select_by_label(seg, "orange") != 0 and select_by_label(seg, "cyan") != 0


def test_touching_same_colour_cylinders_split() -> None:
    cam = top_down_camera(64)
    c = (0.85, 0.25, 0.30)
    objs = [Obj("cylinder", -0.03, 0.0, 0.0, (0.03, 0.03), 0.03, c), Obj("cylinder", 0.0302, 0.0, 0.0, (0.03, 0.03), 0.03, c)]
    rgb, ids, _ = _scene(cam, objs, rgb_noise=2.0)
    seg = RgbSegmenter().segment(rgb)
    m = match_instances(seg.instance_ids, ids)
    assert seg.num_objects == 2 and min(m.gt_iou.values()) >= 0.8
    off = RgbSegmenter(RgbConfig(split_touching=False)).segment(rgb)
    assert off.num_objects == 1  # the split is what separates them


def test_split_region_keeps_one_convex_shape_whole() -> None:
    m = np.zeros((30, 40), bool)
    m[5:20, 4:34] = True  # elongated box
    assert split_region(m, 0.75, 5).max() == 1
    yy, xx = np.mgrid[0:30, 0:40]
    disk = (yy - 15) ** 2 + (xx - 20) ** 2 <= 100
    assert split_region(disk, 0.75, 5).max() == 1


def test_textured_tables_give_no_false_objects() -> None:
    cam = top_down_camera(64)
    for tex in ("plain", "checker", "grain"):
        rgb, _, _ = _scene(cam, [], table_rgb=(0.6, 0.5, 0.4), table_texture=tex, rgb_noise=4.0, rng=np.random.default_rng(1))
        assert RgbSegmenter().segment(rgb).num_objects == 0, tex


def test_pusher_is_ignored() -> None:
    cam = top_down_camera(64)
    objs = [Obj("box", 0.0, 0.0, 0.0, (0.03, 0.03), 0.03, (0.2, 0.6, 0.9))]
    rgb, ids, _ = _scene(cam, objs, pusher_xy=(0.043, 0.0))
    seg = RgbSegmenter().segment(rgb)
    assert seg.num_objects == 1 and match_instances(seg.instance_ids, ids).gt_iou[1] >= 0.9


def test_random_looks_mean_iou() -> None:
    rng = np.random.default_rng(3)
    ious = []
    for cam in (top_down_camera(64), oblique_camera(160, 120)):
        for k in range(6):
            objs = random_objects(rng, 3, touching_pair=(k % 3 == 0))
            rgb, ids, _ = _scene(cam, objs, table_rgb=tuple(rng.uniform(0.3, 0.8, 3) * [1, 1, 1]), table_texture=("plain", "grain", "checker")[k % 3],
                                 rgb_noise=2.0, rng=rng)
            ious += list(match_instances(RgbSegmenter().segment(rgb).instance_ids, ids).gt_iou.values())
    assert np.mean(ious) >= 0.8


def test_config_validation_and_factory() -> None:
    with pytest.raises(ValueError, match="RgbConfig.neck_ratio"):
        RgbConfig(neck_ratio=1.5)
    with pytest.raises(ValueError, match="smoothing_px must be odd"):
        RgbConfig(smoothing_px=4)
    assert isinstance(make_segmenter("rgb"), RgbSegmenter)
    with pytest.raises(ValueError, match="valid fields"):
        make_segmenter("rgb", background_threshold=0.1)
    with pytest.raises(ValueError, match="unknown segmentation backend"):
        make_segmenter("palette")
    with pytest.raises(ValueError, match="only used by the 'rgbd'"):
        make_segmenter("rgb", calibration={"K": np.eye(3)})


def test_bad_images_raise() -> None:
    with pytest.raises(ValueError):
        RgbSegmenter().segment(np.zeros((3, 8, 8)))
    assert RgbSegmenter().segment(np.full((16, 16, 3), 128, np.uint8)).num_objects == 0
