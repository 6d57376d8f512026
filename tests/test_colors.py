"""Generic colour names (kinemask_ros.segmentation.colors) and label-based target selection."""

from __future__ import annotations

import numpy as np
import pytest

from kinemask_ros.palette import PALETTE, PUSHER_RGB, TABLE_RGB
from kinemask_ros.segmentation import COLOR_NAMES, Segmentation, color_name, color_names, select_by_label
from kinemask_ros.segmentation.colors import normalize_color_word, srgb_to_oklab


@pytest.mark.parametrize("name", sorted(PALETTE))
@pytest.mark.parametrize("shade", [0.75, 0.85, 1.0, 1.15])
def test_palette_colours_get_their_own_name_also_shaded(name: str, shade: float) -> None:
    rgb = np.clip(np.asarray(PALETTE[name]) * shade, 0, 1)
    assert color_name(rgb) == name


@pytest.mark.parametrize(
    "rgb, name",
    [
        ((1, 0, 0), "red"), ((0.5, 0.0, 0.0), "red"), ((1, 0.65, 0), "orange"), ((1, 1, 0), "yellow"), ((0.85, 0.65, 0.13), "yellow"),
        ((0, 1, 0), "green"), ((0.5, 1, 0), "green"), ((0, 1, 1), "cyan"), ((0, 0.5, 0.5), "cyan"), ((0, 0, 1), "blue"),
        ((0, 0, 0.5), "blue"), ((0.12, 0.56, 1.0), "blue"), ((0.5, 0, 1), "purple"), ((0.29, 0, 0.51), "purple"),
        ((1, 0.41, 0.71), "pink"), ((1, 0.75, 0.8), "pink"), ((0.55, 0.33, 0.15), "brown"), ((0.4, 0.25, 0.1), "brown"),
        ((0.95, 0.95, 0.95), "white"), ((0.5, 0.5, 0.5), "grey"), ((0.05, 0.05, 0.05), "black"), (PUSHER_RGB, "grey"),
        (TABLE_RGB, "grey"),
    ],
)
def test_generic_colours(rgb, name: str) -> None:
    assert color_name(rgb) == name


def test_every_name_is_reachable_and_in_the_list() -> None:
    rng = np.random.default_rng(0)
    got = set(color_names(rng.uniform(0, 1, (4000, 3))))
    assert got == set(COLOR_NAMES)


def test_oklab_reference_values() -> None:
    # white -> L=1, a=b=0; sRGB red -> (0.628, 0.225, 0.126) (Ottosson's reference)
    np.testing.assert_allclose(srgb_to_oklab([1, 1, 1]), [1, 0, 0], atol=1e-4)
    np.testing.assert_allclose(srgb_to_oklab([1, 0, 0]), [0.6280, 0.2249, 0.1258], atol=1e-3)


def test_bad_colour_input() -> None:
    for bad in ([1, 0], [np.nan, 0, 0], "red"):
        with pytest.raises(ValueError, match="RGB triple"):
            color_name(bad)
    assert color_names(np.full((2, 3), np.nan)) == [None, None]


def test_select_by_label_with_generic_names_and_synonyms() -> None:
    ids = np.zeros((8, 8), np.uint8)
    ids[1:3, 1:3], ids[5:7, 5:7] = 1, 2
    seg = Segmentation.from_instance_ids(ids, labels=["grey", "purple"])
    assert select_by_label(seg, "the gray box") == 1
    assert select_by_label(seg, "Violet") == 2 and select_by_label(seg, "purple cylinder") == 2
    assert select_by_label(seg, "red") == 0
    assert normalize_color_word(" Gray ") == "grey" and normalize_color_word("box") == "box"
