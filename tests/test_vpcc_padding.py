"""V-PCC padding: occupied pixels never change, holes are filled with values from the occupied ones."""

from __future__ import annotations

import numpy as np
import pytest

from imcodec.vpcc.padding import fill_from_previous, pad_dilate, push_pull


def _image(rng, h=37, w=53, c=None):
    shape = (h, w) if c is None else (h, w, c)
    img = rng.integers(0, 256, size=shape).astype(np.float64)
    mask = rng.random((h, w)) < 0.2
    mask[10:20, 5:30] = True
    return img, mask


@pytest.mark.parametrize("pad", [pad_dilate, push_pull])
def test_padding_keeps_occupied_pixels_and_stays_in_range(pad):
    rng = np.random.default_rng(4)
    img, mask = _image(rng)
    out = pad(img, mask)
    assert out.shape == img.shape
    assert np.array_equal(out[mask], img[mask])
    assert np.all(np.isfinite(out))
    # averages of occupied values: inside their range
    assert out.min() >= img[mask].min() - 1e-9 and out.max() <= img[mask].max() + 1e-9


def test_push_pull_colour_keeps_occupied_pixels():
    rng = np.random.default_rng(5)
    img, mask = _image(rng, c=3)
    out = push_pull(img, mask)
    assert np.array_equal(out[mask], img[mask])


@pytest.mark.parametrize("pad", [pad_dilate, push_pull])
def test_constant_content_pads_to_the_constant(pad):
    img = np.zeros((20, 30))
    mask = np.zeros((20, 30), dtype=bool)
    mask[3:6, 4:9] = True
    img[mask] = 77.0
    assert np.allclose(pad(img, mask), 77.0)


def test_dilation_takes_the_mean_of_filled_neighbours():
    img = np.zeros((1, 5))
    mask = np.array([[True, False, False, False, True]])
    img[0, 0], img[0, 4] = 10.0, 30.0
    out = pad_dilate(img, mask)
    # ring 1: pixels 1 and 3 copy their only filled neighbour; ring 2: pixel 2 averages them
    assert out[0].tolist() == [10.0, 10.0, 20.0, 30.0, 30.0]


@pytest.mark.parametrize("pad", [pad_dilate, push_pull])
def test_empty_mask_gives_the_empty_value(pad):
    out = pad(np.zeros((4, 6)), np.zeros((4, 6), dtype=bool), 5.0)
    assert np.all(out == 5.0)


def test_fill_from_previous_copies_only_unread_blocks():

    rng = np.random.default_rng(5)
    h, w = 20, 36  # not multiples of 8: partial blocks at the right and bottom edges
    prev = (rng.integers(0, 256, (h, w)).astype(np.uint8), rng.integers(0, 256, (h // 2, w // 2)).astype(np.uint8))
    cur = (rng.integers(0, 256, (h, w)).astype(np.uint8), rng.integers(0, 256, (h // 2, w // 2)).astype(np.uint8))
    mask = np.zeros((h, w), bool)
    mask[3, 5] = mask[17, 33] = mask[9, 8] = True
    got = fill_from_previous(prev, cur, mask)
    for by in range(0, h, 8):
        for bx in range(0, w, 8):
            read = mask[by:by + 8, bx:bx + 8].any()
            src = cur if read else prev
            assert np.array_equal(got[0][by:by + 8, bx:bx + 8], src[0][by:by + 8, bx:bx + 8])
            assert np.array_equal(got[1][by // 2:by // 2 + 4, bx // 2:bx // 2 + 4],
                                  src[1][by // 2:by // 2 + 4, bx // 2:bx // 2 + 4])
    assert got[0].dtype == np.uint8
    with pytest.raises(ValueError, match="do not match"):
        fill_from_previous(prev, cur, mask[:, :-1])
